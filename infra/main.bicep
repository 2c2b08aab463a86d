// Entry point for azd: creates the envhub resource group and wires every module in infra/app together.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used for the resource group name and to derive unique resource names.')
param environmentName string

@minLength(1)
@description('Location for all resources. Limited to regions that offer Flex Consumption.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Principal running azd. When set, it gets the same data-plane access as the app so it can work against the deployment locally. Leave empty to skip.')
param principalId string = ''

@description('User or ServicePrincipal; azd fills this in. Empty means User.')
param principalType string = ''

@description('Client id of the Entra ID app registration that signs callers in (see infra/README.md).')
param authClientId string

@description('Entra ID group object ids mapped to envhub grants: {"<group id>": "admin" | "<role>@<workspace>"}.')
param entraGroups object = {}

@description('NCRONTAB (six fields, seconds first, UTC) of the patch scan. The default runs on days 1, 15 and 29 at 03:00, at least once in every 14-day window.')
param patchScanSchedule string = '0 0 3 */14 * *'

@description('SKU for the container registry. Standard gives more included storage for many environment images.')
@allowed([
  'Basic'
  'Standard'
])
param registrySku string = 'Basic'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

var functionAppName = 'func-api-${resourceToken}'
var deploymentStorageContainerName = 'deploymentpackage'
var buildContextsContainerName = 'build-contexts'
var cosmosDatabaseName = 'envhub'
var buildQueueName = 'build-requests'
var scanQueueName = 'scan-requests'
// Work handed in as messages: whoever holds Storage Queue Data Message Sender on the account acts as a
// contributor in every workspace the messages name (see README, "Queue messages").
var registrationQueueName = 'environment-registrations'
var submissionQueueName = 'job-submissions'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity './app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    blobContainerNames: [
      deploymentStorageContainerName
      buildContextsContainerName
    ]
    queueNames: [
      buildQueueName
      '${buildQueueName}-poison'
      scanQueueName
      '${scanQueueName}-poison'
      registrationQueueName
      '${registrationQueueName}-poison'
      submissionQueueName
      '${submissionQueueName}-poison'
    ]
  }
}

module monitoring './app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module cosmos './app/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    // Environments and jobs live in their workspace's partition. Builds are shared by hash across
    // workspaces: each build, and each hash's head document, is a partition of its own ('/pk').
    containers: [
      { name: 'environments', partitionKeyPath: '/workspace' }
      { name: 'jobs', partitionKeyPath: '/workspace' }
      { name: 'builds', partitionKeyPath: '/pk' }
      { name: 'deployments', partitionKeyPath: '/workspace' }
      // The patch watch: each scan is a partition of its own, findings live in their workspace's, and the
      // remembered digests of immutable tags in their repository's.
      { name: 'scans', partitionKeyPath: '/pk' }
      { name: 'findings', partitionKeyPath: '/workspace' }
      { name: 'tags', partitionKeyPath: '/repository' }
      // Who may call (bearer tokens, one partition) and what they changed (per workspace).
      { name: 'tokens', partitionKeyPath: '/pk' }
      { name: 'audit', partitionKeyPath: '/workspace' }
      // What envhub took from queues: an entry per (workspace, correlation id) in its workspace's partition, and
      // the replies owed when a build ends in that build's ('build:<id>').
      { name: 'inbox', partitionKeyPath: '/pk' }
    ]
  }
}

module registry './app/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
    skuName: registrySku
  }
}

// Settings the envhub code reads (shared/settings.py). Kept in one place so the app and the azd outputs
// below agree; a test checks that the code reads every one and needs no other.
var envhubSettings = {
  ENVHUB_STORE: 'cosmos'
  ENVHUB_COSMOS_ENDPOINT: cosmos.outputs.endpoint
  ENVHUB_COSMOS_DATABASE: cosmos.outputs.databaseName
  ENVHUB_CONTEXTS: 'blob'
  ENVHUB_BLOB_ACCOUNT_URL: storage.outputs.blobEndpoint
  ENVHUB_BLOB_CONTAINER: buildContextsContainerName
  ENVHUB_QUEUE: 'storage'
  ENVHUB_QUEUE_ACCOUNT_URL: storage.outputs.queueEndpoint
  ENVHUB_BUILD_QUEUE: buildQueueName
  ENVHUB_REGISTRY: registry.outputs.loginServer
  ENVHUB_REGISTRY_KIND: 'acr'
  ENVHUB_BUILDER: 'acr_tasks'
  ENVHUB_ACR_RESOURCE_ID: registry.outputs.id
  ENVHUB_ARM_ENDPOINT: environment().resourceManager
  // An ACR Tasks run takes minutes: check it every 10 s at first, then at most every minute.
  ENVHUB_BUILD_CHECK_SECONDS: '10'
  ENVHUB_BUILD_CHECK_MAX_SECONDS: '60'
  ENVHUB_BUILD_STALE_SECONDS: '900'
  ENVHUB_SCAN_QUEUE: scanQueueName
  ENVHUB_REGISTRATION_QUEUE: registrationQueueName
  ENVHUB_SUBMISSION_QUEUE: submissionQueueName
  // Callers sign in with Entra ID through App Service Authentication (api.bicep); roles from app roles or groups.
  ENVHUB_AUTH: 'entra'
  ENVHUB_ENTRA_GROUPS: string(entraGroups)
  // The daily garbage timer removes build-context blobs no manifest names (refused uploads) after a day.
  ENVHUB_CONTEXT_GC_HOURS: '24'
  // Read by the patch scan's timer trigger (%PATCH_SCAN_SCHEDULE%) and by envhub itself.
  PATCH_SCAN_SCHEDULE: patchScanSchedule
}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    runtimeName: 'python'
    runtimeVersion: '3.11'
    authClientId: authClientId
    appSettings: union(envhubSettings, {
      // The Azure SDK's DefaultAzureCredential needs this to pick the user-assigned identity.
      AZURE_CLIENT_ID: identity.outputs.clientId
    })
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    cosmosAccountName: cosmos.outputs.name
    registryName: registry.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    principalId: principalId
    principalType: empty(principalType) ? 'User' : principalType
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_URI string = api.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_COSMOS_ACCOUNT_NAME string = cosmos.outputs.name
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString

// Same values the app runs with, so `azd env get-values` is enough to run envhub locally against this deployment.
output ENVHUB_STORE string = envhubSettings.ENVHUB_STORE
output ENVHUB_COSMOS_ENDPOINT string = envhubSettings.ENVHUB_COSMOS_ENDPOINT
output ENVHUB_COSMOS_DATABASE string = envhubSettings.ENVHUB_COSMOS_DATABASE
output ENVHUB_CONTEXTS string = envhubSettings.ENVHUB_CONTEXTS
output ENVHUB_BLOB_ACCOUNT_URL string = envhubSettings.ENVHUB_BLOB_ACCOUNT_URL
output ENVHUB_BLOB_CONTAINER string = envhubSettings.ENVHUB_BLOB_CONTAINER
output ENVHUB_QUEUE string = envhubSettings.ENVHUB_QUEUE
output ENVHUB_QUEUE_ACCOUNT_URL string = envhubSettings.ENVHUB_QUEUE_ACCOUNT_URL
output ENVHUB_BUILD_QUEUE string = envhubSettings.ENVHUB_BUILD_QUEUE
output ENVHUB_REGISTRY string = envhubSettings.ENVHUB_REGISTRY
output ENVHUB_REGISTRY_KIND string = envhubSettings.ENVHUB_REGISTRY_KIND
output ENVHUB_BUILDER string = envhubSettings.ENVHUB_BUILDER
output ENVHUB_ACR_RESOURCE_ID string = envhubSettings.ENVHUB_ACR_RESOURCE_ID
output ENVHUB_ARM_ENDPOINT string = envhubSettings.ENVHUB_ARM_ENDPOINT
output ENVHUB_SCAN_QUEUE string = envhubSettings.ENVHUB_SCAN_QUEUE
output ENVHUB_REGISTRATION_QUEUE string = envhubSettings.ENVHUB_REGISTRATION_QUEUE
output ENVHUB_SUBMISSION_QUEUE string = envhubSettings.ENVHUB_SUBMISSION_QUEUE
output PATCH_SCAN_SCHEDULE string = envhubSettings.PATCH_SCAN_SCHEDULE
