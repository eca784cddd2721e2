"""The Django infrastructure every app shares: domain errors and their HTTP answers (`errors`,
`middleware`), roles and token scopes (`access`), the audit log (`audit`), API tokens (`tokens`,
`authentication`) and the REST API's helpers (`api`, `renderers`, `serializer_fields`). It sits
below the apps and imports none of them (docs/architecture.md); the project shell is `dashboard`."""
