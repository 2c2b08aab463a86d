// Cosmos DB for NoSQL account (serverless) holding the envhub database and its containers.

param name string
param location string = resourceGroup().location
param tags object = {}
param databaseName string
@description('Containers to create, each `{ name, partitionKeyPath }`.')
param containers array

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
      }
    ]
    // Serverless bills per request, which suits a metadata store with bursty, low traffic.
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    // Keys are disabled; access goes through data-plane RBAC (sqlRoleAssignments in rbac.bicep).
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// Data-plane RBAC cannot create databases or containers, so they are declared here rather than by the app.
resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [for container in containers: {
  parent: database
  name: container.name
  properties: {
    resource: {
      id: container.name
      partitionKey: {
        paths: [
          container.partitionKeyPath
        ]
        kind: 'Hash'
      }
    }
  }
}]

output id string = account.id
output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
