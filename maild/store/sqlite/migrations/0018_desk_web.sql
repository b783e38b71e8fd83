-- The staff desk in the browser (issue 12): ticket tags, a related service (free text: a hostname or an
-- order number) and predefined replies.
ALTER TABLE tickets ADD COLUMN related_service TEXT NOT NULL DEFAULT '';

CREATE TABLE ticket_tags (
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
CREATE INDEX ticket_tags_tag ON ticket_tags (tag, ticket_id);

CREATE TABLE predefined_replies (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL UNIQUE,
    body        TEXT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

-- The desk's list: tickets not merged away, by department, status and last reply (the default views and
-- their counts, answered from the index alone), by last reply (every status), by subject, and the tickets
-- flagged or assigned to someone (partial on NOT NULL: the planner then knows how few they are).
CREATE INDEX tickets_live_department ON tickets (department_id, status, last_reply_at) WHERE merged_into IS NULL;
CREATE INDEX tickets_live_department_reply ON tickets (department_id, last_reply_at) WHERE merged_into IS NULL;
CREATE INDEX tickets_live_status ON tickets (status, last_reply_at) WHERE merged_into IS NULL;
CREATE INDEX tickets_live_reply ON tickets (last_reply_at) WHERE merged_into IS NULL;
CREATE INDEX tickets_live_subject ON tickets (department_id, lower(subject)) WHERE merged_into IS NULL;
CREATE INDEX tickets_live_flagged ON tickets (flagged_to, last_reply_at) WHERE merged_into IS NULL AND flagged_to IS NOT NULL;
CREATE INDEX tickets_live_assigned ON tickets (assigned_to, last_reply_at) WHERE merged_into IS NULL AND assigned_to IS NOT NULL;
