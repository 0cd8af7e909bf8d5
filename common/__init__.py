"""Configuration and database plumbing shared by the web app, the senders and the scripts."""
