-- OAuth scopes follow the data types a customer means to back up (issue 10): the scopes an authorization asked
-- for are kept with its state, so the callback can record them when the platform does not say which it granted.
ALTER TABLE oauth_states ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
