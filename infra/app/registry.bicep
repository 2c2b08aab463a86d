// Azure Container Registry that stores built environment images and runs ACR Tasks builds.

param name string
param location string = resourceGroup().location
param tags object = {}

@allowed([
  'Basic'
  'Standard'
])
param skuName string = 'Basic'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    // Push and pull go through Entra ID role assignments, never the shared admin account.
    adminUserEnabled: false
  }
}

output id string = registry.id
output name string = registry.name
output loginServer string = registry.properties.loginServer
