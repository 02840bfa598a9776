"""The embedded store's tables (``sqlite``): switches, revocations, the trail, replays,
sign-ins and sessions, marks first seen, memos, tallies, and refusals counted by the minute."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS controls (
    name TEXT PRIMARY KEY, reason TEXT NOT NULL, since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (subject TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sign_ins (subject TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (session TEXT PRIMARY KEY, first_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS marks (mark TEXT PRIMARY KEY, first_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    instance TEXT PRIMARY KEY, key_sid TEXT NOT NULL, until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS memos (key TEXT PRIMARY KEY, value TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tallies (
    tally TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (tally, key)
);
CREATE TABLE IF NOT EXISTS refusals (
    minute INTEGER NOT NULL, address TEXT NOT NULL, decision TEXT NOT NULL,
    code TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (minute, address, decision, code)
);
"""
