"""notifications: contact data, deliveries (the email outbox) and the SMTP sender."""
