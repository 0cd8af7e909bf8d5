-- Lead CSV imports (job rows, a COPY staging table, the bad-row report), campaign fan-out bookkeeping and indexes.
-- depends: 0001_schema

CREATE TABLE lead_imports (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id           bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id         bigint REFERENCES user_devices ON DELETE SET NULL,  -- for rows with a blank device_id
  filename          text NOT NULL DEFAULT '' CHECK (length(filename) <= 255),
  status            text NOT NULL DEFAULT 'uploading'
                    CHECK (status IN ('uploading', 'validating', 'finished', 'failed')),
  error             text,
  bytes_total       bigint CHECK (bytes_total >= 0),     -- NULL when the upload size is unknown
  bytes_read        bigint NOT NULL DEFAULT 0 CHECK (bytes_read >= 0),
  lines_total       integer NOT NULL DEFAULT 0 CHECK (lines_total >= 0),
  lines_processed   integer NOT NULL DEFAULT 0 CHECK (lines_processed >= 0),
  rows_inserted     integer NOT NULL DEFAULT 0,
  rows_merged       integer NOT NULL DEFAULT 0,
  rows_bad          integer NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  finished_at       timestamptz,
  CHECK ((status IN ('finished', 'failed')) = (finished_at IS NOT NULL)),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX lead_imports_user ON lead_imports (user_id, id);
CREATE INDEX lead_imports_open ON lead_imports (updated_at) WHERE status IN ('uploading', 'validating');
COMMENT ON TABLE lead_imports IS
  'One CSV import: upload progress (bytes), validation progress (lines) and the outcome counts.';

-- Raw records as the upload streams in (COPY). Unlogged: it is rebuilt by re-uploading, and
-- emptied once the import is validated.
CREATE UNLOGGED TABLE lead_import_lines (
  import_id bigint NOT NULL,
  line_no   integer NOT NULL,
  fields    text[],          -- the CSV record; NULL when the line could not be read (defect)
  defect    text,            -- why the line could not be read (not UTF-8, too long)
  PRIMARY KEY (import_id, line_no)
);
COMMENT ON TABLE lead_import_lines IS
  'Staging for CSV imports: each record as text fields (or the defect that made it unreadable), validated in SQL.';

CREATE TABLE lead_import_errors (
  import_id bigint NOT NULL REFERENCES lead_imports ON DELETE CASCADE,
  line_no   integer NOT NULL,
  reason    text NOT NULL,
  content   text NOT NULL DEFAULT '',   -- the start of the offending line, for the report
  PRIMARY KEY (import_id, line_no)
);
COMMENT ON TABLE lead_import_errors IS 'Every rejected CSV line of an import, with its line number and reason.';

-- Chunked fan-out walks one owner's leads by id.
CREATE INDEX leads_user_id ON leads (user_id, id);
-- "Is this failed message already retried?" for reports and retries.
CREATE INDEX broadcast_messages_retry_of ON broadcast_messages (retry_of) WHERE retry_of IS NOT NULL;

-- A campaign's fan-out is done (every lead chunk queued, or the AI pool spread) from this time on.
ALTER TABLE campaigns ADD COLUMN expanded_at timestamptz;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_expanded_after_trigger CHECK (expanded_at IS NULL OR triggered_at IS NOT NULL);
COMMENT ON COLUMN campaigns.expanded_at IS 'When the fan-out into broadcast_messages completed (NULL while expanding or not yet due).';
