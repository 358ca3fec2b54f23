-- Rep carousels sent as RCS cards (docs/providers.md, "Carousels") are recorded like any other
-- choices, so that a tap on a card's reply maps back to its option: the form may now be
-- 'carousel'. Kept in lockstep with migrations/sqlite/0007_carousel_prompts.sql.
ALTER TABLE choice_prompts DROP CONSTRAINT choice_prompts_form_check;
ALTER TABLE choice_prompts ADD CONSTRAINT choice_prompts_form_check
    CHECK (form IN ('buttons', 'list', 'suggestions', 'carousel', 'text'));
