// Storage account: Functions host storage, the Flex Consumption deployment package, build contexts and work queues.

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Blob containers to create. Must include the Flex Consumption deployment container.')
param blobContainerNames array

@description('Storage queues to create.')
param queueNames array

@description('Days after which a build context uploaded by Azure ML\'s SDK (containers uploads-*, one per workspace) is removed. envhub copies a folder into its own build contexts when a version names it; a client finding the folder gone uploads it again.')
param uploadRetentionDays int = 30

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    // Every caller (host, app code, deployer) authenticates with Entra ID, so account keys stay off.
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobServices 'blobServices' = {
    name: 'default'

    resource containers 'containers' = [for containerName in blobContainerNames: {
      name: containerName
      properties: {
        publicAccess: 'None'
      }
    }]
  }

  resource queueServices 'queueServices' = {
    name: 'default'

    // Created here so the first enqueue does not need create rights and the queue triggers have something to watch.
    resource queues 'queues' = [for queueName in queueNames: {
      name: queueName
    }]
  }
}

// The SDK's uploads are a staging area: expire them (ENVHUB_DATASTORE_CONTAINER_PREFIX keeps its default, uploads).
resource uploadsLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'expire-sdk-uploads'
          type: 'Lifecycle'
          definition: {
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: uploadRetentionDays
                }
              }
            }
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'uploads-'
              ]
            }
          }
        }
      ]
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
