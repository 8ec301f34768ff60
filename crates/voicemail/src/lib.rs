//! Voicemail sync: Unity Connection mailboxes mirrored into users' IMAP mailboxes, both ways.
