-- 0003_account_settings: the store becomes the source of truth for accounts.
--
-- `settings` is the JSON of the account's configuration (provider, address, flow,
-- client id, overrides, ...) without any secret: the client secret and the tokens stay
-- in the encrypted `secrets` blob. NULL for rows written before this migration, which
-- the gateway reads as "not usable until registered again".
-- `origin` says who owns the row: 'cli' for `mailgate account add`, 'config' for
-- accounts declared in the configuration file and synced from it. Sync only ever
-- touches 'config' rows, so an edit of the file cannot delete a CLI-added mailbox.
-- Existing rows predate both and were made by hand or by tests: 'cli' keeps them.
ALTER TABLE accounts ADD COLUMN settings TEXT;
ALTER TABLE accounts ADD COLUMN origin TEXT NOT NULL DEFAULT 'cli';
