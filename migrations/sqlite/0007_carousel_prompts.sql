-- Rep carousels sent as RCS cards (docs/providers.md, "Carousels") are recorded like any other
-- choices, so that a tap on a card's reply maps back to its option: the form may now be
-- 'carousel'. SQLite cannot change a CHECK in place, so the table is rebuilt with its rows.
-- Kept in lockstep with migrations/postgres/0007_carousel_prompts.sql.
CREATE TABLE choice_prompts_0007 (
    conversation_id         text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    salesforce_entry_id     text NOT NULL,
    message_id              text NOT NULL,
    -- The outbox row that sent them: orders a conversation's choices as the rep sent them.
    outbox_id               integer NOT NULL,
    provider_message_id     text,
    form                    text NOT NULL
                            CHECK (form IN ('buttons', 'list', 'suggestions', 'carousel', 'text')),
    options                 text NOT NULL CHECK (json_valid(options)),
    created_at              text NOT NULL,
    answered_at             text,
    PRIMARY KEY (conversation_id, salesforce_entry_id)
) STRICT;
INSERT INTO choice_prompts_0007 SELECT * FROM choice_prompts;
DROP TABLE choice_prompts;
ALTER TABLE choice_prompts_0007 RENAME TO choice_prompts;
CREATE INDEX choice_prompts_newest ON choice_prompts (conversation_id, outbox_id);
