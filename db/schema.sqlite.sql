-- db/schema.sqlite.sql: tallyd's tables in an SQLite file (the default store).
--
-- tallyd creates its accounting tables itself; load this file for the
-- how-to's per-client quota tables, which tallyd only reads:
--
--   sqlite3 /var/lib/tallyd/tallyd.sqlite < /usr/share/tallyd/schema.sqlite.sql

CREATE TABLE IF NOT EXISTS `acct_client_address` (
  `id` INTEGER PRIMARY KEY,
  `key` VARCHAR(255) NOT NULL,
  `time` VARCHAR(255) NOT NULL,
  `count` INTEGER NOT NULL DEFAULT 0,
  `count_rcpt` INTEGER NOT NULL DEFAULT 0,
  `size` INTEGER NOT NULL DEFAULT 0,
  `size_rcpt` INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS `acct_client_address_time_key`
  ON `acct_client_address` (`key`, `time`);
CREATE INDEX IF NOT EXISTS `acct_client_address_time`
  ON `acct_client_address` (`time`);
-- Keys compared as mtpolicyd's MySQL tables compare them: ASCII case and
-- trailing spaces folded (one client: Alice@Example.org, "alice@example.org ");
-- the row keeps the spelling that created it.
CREATE UNIQUE INDEX IF NOT EXISTS `acct_client_address_key_folded`
  ON `acct_client_address` (lower(rtrim(`key`, ' ')), `time`);

CREATE TABLE IF NOT EXISTS `tallyd_flushes` (
  `instance` TEXT NOT NULL PRIMARY KEY,
  `seq` INTEGER NOT NULL,
  `flushed_at` TEXT,
  `owner` TEXT NOT NULL DEFAULT '',
  `alive_at` INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS `relay_policies` (
  `id` INTEGER PRIMARY KEY,
  `desc` VARCHAR(64) NOT NULL,
  `config` TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS `relay_hosts` (
  `id` INTEGER PRIMARY KEY,
  `client_address` VARCHAR(64) NOT NULL,
  `relay_policy` INTEGER NOT NULL REFERENCES `relay_policies` (`id`)
);
CREATE INDEX IF NOT EXISTS `relay_hosts_client_address` ON `relay_hosts` (`client_address`);

-- Example rows from the how-to; replace them with your own.
-- INSERT INTO relay_policies VALUES(1, 'standard relay host', '{"quota_count":"10000"}');
-- INSERT INTO relay_policies VALUES(2, 'premium relay host', '{"quota_count":"100000"}');
-- INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::3', 1);
-- INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::4', 2);
