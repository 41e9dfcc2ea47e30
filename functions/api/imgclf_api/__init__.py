"""The REST API and the upload page: one Lambda function behind API Gateway."""
