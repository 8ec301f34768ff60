-- Voicemail recordings that could not be converted to MP3 (GSM 6.10, G.729a, truncated or
-- corrupt audio, none at all; issue 17): the mail went out with the original WAV or no
-- attachment. Per account: how many so far, the latest reason and when, for the status.

ALTER TABLE voicemail_accounts ADD COLUMN audio_problems BIGINT NOT NULL DEFAULT 0;
ALTER TABLE voicemail_accounts ADD COLUMN last_audio_problem TEXT;
ALTER TABLE voicemail_accounts ADD COLUMN last_audio_problem_at BIGINT;
