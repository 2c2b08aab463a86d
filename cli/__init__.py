"""The envhub command line: `envhub serve` and a client of the HTTP API."""
