"""The long-lived service: REST API, dashboard, metrics and the OpenADR client around the live controller."""
