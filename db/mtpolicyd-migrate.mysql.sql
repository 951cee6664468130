-- db/mtpolicyd-migrate.mysql.sql: make mtpolicyd's accounting tables fit for tallyd.
--
-- tallyd uses mtpolicyd's tables as they are, so this is optional, but
-- mtpolicyd creates them as MyISAM with INT UNSIGNED counters:
--   * INT UNSIGNED stops at 4,294,967,295: size and size_rcpt of a busy relay
--     pass that within a month, and from then on every flush fails with
--     "Out of range value" (tallyd keeps the increments and retries, but
--     they never get in);
--   * MyISAM has no transactions, so a flush cut in the middle can leave part
--     of its rows written, and tallyd's exactly-once bookkeeping cannot hold.
-- This script converts a table to BIGINT UNSIGNED and InnoDB.  Run it once per
-- accounting table (change the name), with tallyd stopped or flushing into a
-- copy: ALTER TABLE rewrites the table and locks it while it runs.
--
--   mariadb mail < /usr/share/tallyd/mtpolicyd-migrate.mysql.sql
--
-- Key columns stay as mtpolicyd made them (VARCHAR(255) latin1, compared
-- without regard to case), so sender@Example.org and sender@example.org
-- share a row, as they did under mtpolicyd.

ALTER TABLE `acct_client_address`
  MODIFY `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  MODIFY `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  MODIFY `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  MODIFY `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ENGINE=InnoDB;

-- Repeat for each further table, e.g.:
-- ALTER TABLE `acct_sasl_username`
--   MODIFY `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,
--   MODIFY `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
--   MODIFY `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,
--   MODIFY `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
--   ENGINE=InnoDB;
