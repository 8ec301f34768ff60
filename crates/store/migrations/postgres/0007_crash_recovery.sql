-- Crash recovery across nodes (issue 18): a full-refresh claim names its node, the fencing
-- token of that node's `snapshot` lease and a heartbeat (database clock) that the refresher
-- bumps, so a dead or fenced-out refresher's claim is recognised without waiting for an
-- age limit. Sync runs name the node that runs them and, under the server, the job lease
-- and token they ran with, so runs of a dead node can be marked abandoned.

ALTER TABLE snapshot_state ADD COLUMN refresh_node TEXT;
ALTER TABLE snapshot_state ADD COLUMN refresh_lease_token BIGINT;
ALTER TABLE snapshot_state ADD COLUMN refresh_heartbeat_at BIGINT;

ALTER TABLE sync_runs ADD COLUMN node TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_job TEXT;
ALTER TABLE sync_runs ADD COLUMN lease_token BIGINT;

CREATE INDEX job_runs_node_status ON job_runs (node, status);
CREATE INDEX sync_runs_status ON sync_runs (status);
