// User-assigned managed identity that the function app uses for every Azure service it talks to.

param name string
param location string = resourceGroup().location
param tags object = {}

// A user-assigned identity (rather than the site's system identity) exists before the app does,
// so role assignments can be granted up front and survive the app being recreated.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
