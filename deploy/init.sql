CREATE DATABASE IF NOT EXISTS genesis;

CREATE TABLE IF NOT EXISTS genesis.logs (
    timestamp DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when it was logged: UTC, millisecond precision',
    level LowCardinality(String) COMMENT 'lower-case level name',
    message String CODEC(ZSTD(3)) COMMENT 'the formatted message',
    spec_id LowCardinality(String) COMMENT 'specification under test, e.g. spec_001',
    iteration UInt32 COMMENT 'iteration of the TDD loop: 1, 2, 3 ...',
    stdout String CODEC(ZSTD(3)) COMMENT 'standard output of a run; for a test, its captured output',
    stderr String CODEC(ZSTD(3)) COMMENT 'standard error of a run; for a test, its failure text',
    exit_code Int32 COMMENT 'exit status of a run or test; 0 = success',
    code_snapshot String CODEC(ZSTD(3)) COMMENT 'the code that was run',
    duration_ms UInt32 COMMENT 'how long the run or task took, in milliseconds',
    sprint_id LowCardinality(String) COMMENT 'sprint, e.g. S030',
    task_id LowCardinality(String) COMMENT 'task, e.g. T01',
    service LowCardinality(String) DEFAULT 'genesis-pipeline' COMMENT 'emitting service',
    version LowCardinality(String) COMMENT 'version of the emitting service',
    logger LowCardinality(String) COMMENT 'logger name: genesis.run (runs), genesis.pytest (tests) ...',
    exception String CODEC(ZSTD(3)) COMMENT 'formatted traceback / stack',
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)) COMMENT 'every other field, as strings: outcome, test, kind, code_hash ...',
    INDEX idx_level level TYPE set(10) GRANULARITY 4,
    INDEX idx_exit_code exit_code TYPE set(10) GRANULARITY 4,
    INDEX idx_message message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4,
    INDEX idx_stderr stderr TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (spec_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE VIEW IF NOT EXISTS genesis.failures AS SELECT timestamp, spec_id, iteration, logger, message, exit_code, duration_ms, substringUTF8(stderr, toUInt64(greatest(1, toInt64(lengthUTF8(stderr)) - 1999))) AS stderr_tail, substringUTF8(stdout, toUInt64(greatest(1, toInt64(lengthUTF8(stdout)) - 1999))) AS stdout_tail, sprint_id, task_id FROM genesis.logs WHERE exit_code != 0;

CREATE VIEW IF NOT EXISTS genesis.last_iterations AS SELECT spec_id, max(iteration) AS last_iteration, argMax(exit_code, (iteration, timestamp)) AS exit_code, argMax(duration_ms, (iteration, timestamp)) AS duration_ms, max(timestamp) AS last_run_at, count() AS runs FROM genesis.logs WHERE logger = 'genesis.run' GROUP BY spec_id;

CREATE VIEW IF NOT EXISTS genesis.flaky_tests AS SELECT spec_id, attributes['test'] AS test, attributes['code_hash'] AS code_hash, groupUniqArray(attributes['outcome']) AS outcomes, groupUniqArray(iteration) AS iterations FROM genesis.logs WHERE logger = 'genesis.pytest' AND attributes['kind'] = 'test' AND attributes['code_hash'] != '' GROUP BY spec_id, test, code_hash HAVING has(outcomes, 'passed') AND (has(outcomes, 'failed') OR has(outcomes, 'error'));

