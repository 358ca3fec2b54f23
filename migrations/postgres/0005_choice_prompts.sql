-- Rep choices as they went out to the end user (docs/providers.md, "Choices"): the form
-- (buttons, list, suggestions or numbered text) and each option's Salesforce identifier, the id
-- sent to the provider and its number, so that a tap or a typed number maps back to the option.
-- Erased with the conversation.
CREATE TABLE choice_prompts (
    conversation_id         uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    salesforce_entry_id     text NOT NULL,
    message_id              text NOT NULL,
    -- The outbox row that sent them: orders a conversation's choices as the rep sent them.
    outbox_id               bigint NOT NULL,
    provider_message_id     text,
    form                    text NOT NULL CHECK (form IN ('buttons', 'list', 'suggestions', 'text')),
    options                 jsonb NOT NULL,
    created_at              timestamptz NOT NULL,
    answered_at             timestamptz,
    PRIMARY KEY (conversation_id, salesforce_entry_id)
);
CREATE INDEX choice_prompts_newest ON choice_prompts (conversation_id, outbox_id);
