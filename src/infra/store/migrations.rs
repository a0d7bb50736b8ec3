//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.
//!
//! Never edit a migration that has shipped: append a new one. Each runs in its own
//! transaction together with the version bump, so a crash leaves the schema at a known step.

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the tables the whole product needs. Later features add columns, not tables' rewrites.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per instance ever created. A removed (archived) instance keeps its row and history
-- with removed_at set, so its name can be reused by a new instance.
CREATE TABLE instances (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    soul             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,              -- unix ms
    removed_at       INTEGER,
    archive_path     TEXT,                          -- where remove (without --purge) moved its files
    desired_state    TEXT NOT NULL DEFAULT 'stopped'
                     CHECK (desired_state IN ('running', 'stopped')),
    state            TEXT NOT NULL DEFAULT 'stopped',
    state_detail     TEXT,
    state_changed_at INTEGER,
    container_id     TEXT,
    runtime_id       TEXT,
    restart_count    INTEGER NOT NULL DEFAULT 0,
    last_exit_code   INTEGER,
    last_activity_at INTEGER
) STRICT;
CREATE UNIQUE INDEX instances_live_name ON instances(name) WHERE removed_at IS NULL;

-- Inbound and outbound messages. Inbound rows are committed before anything else happens.
CREATE TABLE messages (
    id          TEXT PRIMARY KEY,                   -- uuid v7: unique and time-ordered
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    channel     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    reply_to    TEXT REFERENCES messages(id) ON DELETE SET NULL,
    turn_id     TEXT,
    task_run_id INTEGER REFERENCES task_runs(id) ON DELETE SET NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_instance ON messages(instance_id, created_at);
CREATE INDEX messages_by_state ON messages(state, instance_id);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    instance_id   INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'agent', 'heartbeat')),
    schedule_kind TEXT NOT NULL CHECK (schedule_kind IN ('cron', 'every', 'at')),
    schedule      TEXT NOT NULL,
    tz            TEXT,
    prompt        TEXT NOT NULL,
    context_mode  TEXT NOT NULL DEFAULT 'isolated' CHECK (context_mode IN ('isolated', 'continue')),
    status        TEXT NOT NULL DEFAULT 'active',
    next_run_at   INTEGER,
    last_run_at   INTEGER,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_due ON tasks(status, next_run_at);

-- One row per occurrence. UNIQUE(task_id, scheduled_for) is the exactly-once claim.
CREATE TABLE task_runs (
    id            INTEGER PRIMARY KEY,
    task_id       INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    scheduled_for INTEGER NOT NULL,
    claimed_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    status        TEXT NOT NULL DEFAULT 'claimed',
    result        TEXT,
    error         TEXT,
    UNIQUE (task_id, scheduled_for)
) STRICT;

-- The audit log. It names instances by name, not by row, so it outlives a purge.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    instance TEXT,
    actor    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT
) STRICT;
CREATE INDEX events_by_instance ON events(instance, at);

CREATE TABLE model_usage (
    id                INTEGER PRIMARY KEY,
    instance_id       INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    at                INTEGER NOT NULL,
    request_id        TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms        INTEGER,
    status            TEXT NOT NULL,
    error             TEXT
) STRICT;
CREATE INDEX model_usage_by_instance ON model_usage(instance_id, at);
"#,
    // 2: agent runtimes and their activations. An activation names the runtime instances should
    // run and the one it replaced, so a failed roll-out can put instances back (the previous
    // runtime is never garbage-collected while it is the rollback target).
    r#"
CREATE TABLE runtimes (
    id            TEXT PRIMARY KEY,
    built_at      INTEGER NOT NULL,
    agent_version TEXT NOT NULL,
    protocol      INTEGER NOT NULL,
    toolbox       TEXT,
    size_bytes    INTEGER NOT NULL
) STRICT;

-- History, not a foreign key: a collected runtime's activations stay in the log.
CREATE TABLE runtime_activations (
    id           INTEGER PRIMARY KEY,
    runtime_id   TEXT NOT NULL,
    previous_id  TEXT,
    activated_at INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'superseded', 'rolled-back')),
    detail       TEXT
) STRICT;
CREATE INDEX runtime_activations_status ON runtime_activations(status);
"#,
    // 3: `restart` asks the daemon to restart an instance's container once.
    r#"
ALTER TABLE instances ADD COLUMN restart_requested_at INTEGER;
"#,
    // 4: at most one final answer per turn, whatever crashes and re-deliveries happen.
    r#"
CREATE UNIQUE INDEX messages_one_final_per_turn ON messages(turn_id)
    WHERE direction = 'out' AND state = 'final';
CREATE INDEX messages_by_turn ON messages(turn_id);
-- Whether an inbound message started its turn (1) or rides along as context (0).
ALTER TABLE messages ADD COLUMN triggered INTEGER NOT NULL DEFAULT 0;
"#,
    // 5: the scheduler. A run records what started it and how many missed occurrences it
    // stands for; a message's scope says whether it belongs to the conversation (history),
    // to an isolated task run, or to a silent run (nothing to say: never shown as chat).
    r#"
ALTER TABLE task_runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'schedule'
    CHECK (trigger IN ('schedule', 'manual'));
ALTER TABLE task_runs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX task_runs_by_task ON task_runs(task_id, scheduled_for);
CREATE UNIQUE INDEX tasks_one_heartbeat ON tasks(instance_id) WHERE kind = 'heartbeat';
ALTER TABLE messages ADD COLUMN scope TEXT NOT NULL DEFAULT 'conversation'
    CHECK (scope IN ('conversation', 'isolated', 'silent'));
CREATE INDEX messages_by_task_run ON messages(task_run_id);
"#,
    // 6: health-gated roll-outs. An activation that replaces a runtime is rolled out one
    // instance at a time; each step records when the instance moved and how it ended, so a
    // daemon restarted mid-roll-out carries on where it stopped.
    r#"
ALTER TABLE runtime_activations ADD COLUMN rollout TEXT
    CHECK (rollout IN ('rolling', 'done', 'failed'));
CREATE TABLE rollout_steps (
    activation_id INTEGER NOT NULL REFERENCES runtime_activations(id) ON DELETE CASCADE,
    instance      TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('moving', 'ready', 'reverted')),
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    detail        TEXT,
    PRIMARY KEY (activation_id, instance)
) STRICT;
"#,
    // 7: one uid per instance, allocated once and never reused, so that no instance's user
    // can read another's files. A home draws its block of 65,536 uids at random from
    // 16,777,216 up (a second home on the host very likely gets another block; `doctor`
    // checks); existing instances get theirs by row id, in the order they were made.
    r#"
ALTER TABLE instances ADD COLUMN uid INTEGER;
INSERT OR IGNORE INTO meta (key, value)
    VALUES ('uid_base', CAST(16777216 + (abs(random()) % 32000) * 65536 AS TEXT));
UPDATE instances SET uid = CAST((SELECT value FROM meta WHERE key = 'uid_base') AS INTEGER) + id;
INSERT OR IGNORE INTO meta (key, value)
    VALUES ('uid_next', CAST(COALESCE((SELECT MAX(id) FROM instances), 0) + 1 AS TEXT));
CREATE UNIQUE INDEX instances_uid ON instances(uid);
"#,
    // 8: the web through the host. One row per web request an agent made: the URL as it may
    // be shown (no credentials, no query values), and how it ended.
    r#"
CREATE TABLE web_requests (
    id          INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    action      TEXT NOT NULL,
    url         TEXT NOT NULL,
    result      TEXT NOT NULL CHECK (result IN ('ok', 'refused', 'failed')),
    reason      TEXT,
    status      INTEGER,
    bytes       INTEGER NOT NULL DEFAULT 0,
    millis      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX web_requests_by_instance ON web_requests(instance_id, at);
"#,
    // 9: channels. A message belongs to one conversation (`chat`: '' for the operator's own,
    // `<channel>:<chat>` for a channel's), and turns and history never mix two. Every answer
    // into a channel's chat gets a delivery row: the outbox, sent in order per chat, tried
    // until it succeeds, never sent again once recorded as sent.
    r#"
ALTER TABLE messages ADD COLUMN chat TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_by_chat ON messages(instance_id, chat, created_at);
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE,
    instance_id     INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    chat            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
CREATE INDEX deliveries_pending ON deliveries(instance_id, channel, state, id);
"#,
    // 10: channels that hold a connection (Telegram): how each stands (`channel_status`, for
    // `channels`, the dashboard and /metrics), the parts of a long answer already sent (so a
    // restart goes on from the next part), and pairing codes given to unknown senders.
    r#"
ALTER TABLE deliveries ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
CREATE TABLE channel_status (
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('starting', 'ok', 'failing', 'error')),
    detail      TEXT,
    account     TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, channel)
) STRICT;
CREATE TABLE pairings (
    code        TEXT PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    paired_at   INTEGER
) STRICT;
CREATE INDEX pairings_by_sender ON pairings(instance_id, sender, created_at);
"#,
    // 11: how a channel's sender calls themself (a Telegram user's name), shown beside the
    // sender key (`Ann (telegram:7)`) to the agent and in history; null where there is none.
    r#"
ALTER TABLE messages ADD COLUMN sender_name TEXT;
"#,
    // 12: chat groups. With `"isolation": "chat"` every chat conversation of an instance gets
    // an instance row of its own (its own uid, container, workspace, history, tasks and
    // usage), tied to its instance by parent_id and to its conversation by chat: at most one
    // live group per (instance, chat). Removing the instance removes its groups with it.
    r#"
ALTER TABLE instances ADD COLUMN parent_id INTEGER REFERENCES instances(id) ON DELETE CASCADE;
ALTER TABLE instances ADD COLUMN chat TEXT;
ALTER TABLE instances ADD COLUMN title TEXT;
CREATE UNIQUE INDEX instances_live_group ON instances(parent_id, chat)
    WHERE removed_at IS NULL AND parent_id IS NOT NULL;
CREATE INDEX instances_by_parent ON instances(parent_id);
"#,
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}
