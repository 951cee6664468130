-- db/schema.mysql.sql: tallyd's tables on MariaDB or MySQL.
--
-- tallyd creates its accounting tables itself when they are missing (with
-- the CREATE TABLE below), so loading this file is optional for them.  It
-- also holds the how-to's per-client quota tables, which tallyd only reads
-- (SqlUserConfig): load it, then add your relay hosts.
--
--   mariadb tallyd < /usr/share/tallyd/schema.mysql.sql

-- One table per accounted field: table_prefix + field (here acct_client_address).
-- Counters are BIGINT UNSIGNED (mtpolicyd's INT overflows at 4 GiB of mail);
-- keys are compared as mtpolicyd's are, without regard to ASCII case and
-- trailing spaces (one client: Alice@Example.org, "alice@example.org "); the
-- row keeps the spelling that created it, every byte as it came (latin1).  The index on time lets tallyd
-- read a whole period at once (at start and before each period begins)
-- without scanning the past ones; an mtpolicyd table without it works, with
-- a full scan each time: ALTER TABLE ... ADD KEY `time` (`time`) adds it.
CREATE TABLE IF NOT EXISTS `acct_client_address` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `key` VARCHAR(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `time` VARBINARY(255) NOT NULL,
  `count` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `count_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `size_rcpt` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `time_key` (`key`, `time`),
  KEY `time` (`time`)
) ENGINE=InnoDB;

-- The flusher's bookkeeping: per tallyd instance, the sequence number of its
-- last committed flush, so a flush cut during COMMIT is never applied twice,
-- and the process that owns the row (identity.h) with when it last showed life.
CREATE TABLE IF NOT EXISTS `tallyd_flushes` (
  `instance` VARBINARY(255) NOT NULL PRIMARY KEY,
  `seq` BIGINT UNSIGNED NOT NULL,
  `flushed_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  `owner` VARBINARY(255) NOT NULL DEFAULT '',
  `alive_at` BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;

-- Per-client quotas, as in the mtpolicyd accounting how-to.
CREATE TABLE IF NOT EXISTS `relay_policies` (
  `id` int(11) NOT NULL auto_increment,
  `desc` VARCHAR(64) NOT NULL,
  `config` TEXT NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS `relay_hosts` (
  `id` int(11) NOT NULL auto_increment,
  `client_address` VARCHAR(64) NOT NULL,
  `relay_policy` int(11) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `relay_policy` (`relay_policy`),
  CONSTRAINT `relay_hosts_ibfk_1` FOREIGN KEY (`relay_policy`) REFERENCES `relay_policies` (`id`)
) ENGINE=InnoDB;

-- Example rows from the how-to; replace them with your own.
-- INSERT INTO relay_policies VALUES(1, 'standard relay host', '{"quota_count":"10000"}');
-- INSERT INTO relay_policies VALUES(2, 'premium relay host', '{"quota_count":"100000"}');
-- INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::3', 1);
-- INSERT INTO relay_hosts VALUES(NULL, '2604:8d00:0:1::4', 2);
