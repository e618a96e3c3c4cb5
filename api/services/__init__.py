"""What the routes call: keyword-only functions that raise ``api.services.errors`` types."""
