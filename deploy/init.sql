CREATE DATABASE IF NOT EXISTS genesis;

CREATE TABLE IF NOT EXISTS genesis.logs (
    timestamp DateTime64(3, 'UTC') DEFAULT now64(3),
    level LowCardinality(String),
    message String CODEC(ZSTD(3)),
    spec_id LowCardinality(String),
    iteration UInt32,
    stdout String CODEC(ZSTD(3)),
    stderr String CODEC(ZSTD(3)),
    exit_code Int32,
    code_snapshot String CODEC(ZSTD(3)),
    duration_ms UInt32,
    sprint_id LowCardinality(String),
    task_id LowCardinality(String),
    service LowCardinality(String) DEFAULT 'genesis-pipeline',
    version LowCardinality(String),
    logger LowCardinality(String),
    exception String CODEC(ZSTD(3)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_level level TYPE set(10) GRANULARITY 4,
    INDEX idx_exit_code exit_code TYPE set(10) GRANULARITY 4,
    INDEX idx_message message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4,
    INDEX idx_stderr stderr TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (spec_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

