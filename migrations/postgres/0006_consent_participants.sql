-- Issue 18, events acted on (docs/salesforce.md): the end user's consent on the channel as
-- Salesforce last reported it (EndUserConsentUpdated; NULL: never reported), and who is in
-- each session (ParticipantChanged, ParticipantsConferenced: a JSON array of
-- {subject, role, joined_at}; NULL: never reported). Kept in lockstep with
-- migrations/sqlite/0006_consent_participants.sql.
ALTER TABLE end_users ADD COLUMN consent text CHECK (consent IN ('OptIn', 'OptOut'));
ALTER TABLE end_users ADD COLUMN consent_updated_at timestamptz;
ALTER TABLE sessions ADD COLUMN participants jsonb;
