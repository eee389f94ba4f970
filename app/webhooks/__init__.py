"""Webhooks: admins register URLs for product events; deliveries are HMAC-signed and retried by the job system."""
