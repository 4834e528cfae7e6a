-- Email identity is decided in Rust (EmailAddress::normalized: Unicode lower-casing of
-- the local part, IDNA ASCII form of the domain), not by lower(), whose result depends
-- on the database's locale and never maps an IDN domain to its ASCII form. The store
-- writes the key with every contact, and uniqueness and lookups use it, so PostgreSQL
-- and the memory store agree on which addresses are the same.
ALTER TABLE contacts ADD COLUMN email_key text;
-- Rows written before this migration: lower() is what they were matched by until now.
UPDATE contacts SET email_key = lower(email) WHERE email IS NOT NULL;
ALTER TABLE contacts ADD CONSTRAINT contacts_email_key_check
    CHECK ((email IS NULL) = (email_key IS NULL));
DROP INDEX contacts_email_key;
CREATE UNIQUE INDEX contacts_email_key ON contacts (workspace_id, email_key);
