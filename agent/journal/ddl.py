"""A new journal's schema as SQL, generated from ``agent.journal.models``: do not edit.

Written by ``.venv/bin/python -m agent.journal.models --write`` (run it again after changing a table, with
the table's migration); ``tests/journal/test_ddl.py`` fails while this file differs from what it writes. The
daemon creates a journal from these statements, without loading SQLAlchemy or Alembic.
"""

#: The CREATE statements, in order: tables before the tables that refer to them, each followed by its indexes,
#: and Alembic's table last.
STATEMENTS = (
    (
        'CREATE TABLE commands (\n'
        '\tid INTEGER NOT NULL, \n'
        '\trequest_id VARCHAR(256) NOT NULL, \n'
        '\tdomain_path VARCHAR(256) NOT NULL, \n'
        '\tname VARCHAR(128), \n'
        '\tmachine VARCHAR(64) NOT NULL, \n'
        '\tvalue TEXT, \n'
        '\tdigest VARCHAR(64) NOT NULL, \n'
        '\tstate VARCHAR(64) NOT NULL, \n'
        '\tattempts INTEGER NOT NULL, \n'
        '\treceived_at VARCHAR(32) NOT NULL, \n'
        '\tupdated_at VARCHAR(32) NOT NULL, \n'
        '\tfinished_at VARCHAR(32), \n'
        '\treply_code VARCHAR(16), \n'
        '\treply_message TEXT, \n'
        '\treplied_at VARCHAR(32), \n'
        '\treply_removed_at VARCHAR(32), \n'
        '\tlast_seq INTEGER NOT NULL, \n'
        '\tlast_hash VARCHAR(64) NOT NULL, \n'
        '\tdata TEXT, \n'
        '\tPRIMARY KEY (id)\n'
        ')'
    ),
    'CREATE INDEX ix_commands_open ON commands (id) WHERE reply_removed_at IS NULL',
    'CREATE INDEX ix_commands_request_id ON commands (request_id)',
    (
        'CREATE TABLE releases (\n'
        '\tversion VARCHAR(64) NOT NULL, \n'
        '\tstate VARCHAR(16) NOT NULL, \n'
        '\treason TEXT, \n'
        '\tmarked_at VARCHAR(32) NOT NULL, \n'
        '\tPRIMARY KEY (version)\n'
        ')'
    ),
    (
        'CREATE TABLE seals (\n'
        '\t"key" VARCHAR(64) NOT NULL, \n'
        '\tvalue TEXT NOT NULL, \n'
        '\tPRIMARY KEY ("key")\n'
        ')'
    ),
    (
        'CREATE TABLE exchanges (\n'
        '\tid INTEGER NOT NULL, \n'
        '\tcommand_id INTEGER NOT NULL, \n'
        '\topened_at VARCHAR(32) NOT NULL, \n'
        '\texpires_at VARCHAR(32) NOT NULL, \n'
        '\tpublic_key VARCHAR(64) NOT NULL, \n'
        '\tgroup_bits INTEGER NOT NULL, \n'
        '\tsecret TEXT, \n'
        '\tstate VARCHAR(16) NOT NULL, \n'
        '\tclosed_at VARCHAR(32), \n'
        '\tapplied_digest VARCHAR(64), \n'
        '\tderivation VARCHAR(16), \n'
        '\tapplied_by INTEGER, \n'
        '\tPRIMARY KEY (id), \n'
        '\tFOREIGN KEY(command_id) REFERENCES commands (id) ON DELETE CASCADE\n'
        ')'
    ),
    'CREATE INDEX ix_exchanges_state ON exchanges (state)',
    (
        'CREATE TABLE transitions (\n'
        '\tid INTEGER NOT NULL, \n'
        '\tcommand_id INTEGER NOT NULL, \n'
        '\tseq INTEGER NOT NULL, \n'
        '\t"trigger" VARCHAR(64) NOT NULL, \n'
        '\tsource VARCHAR(64), \n'
        '\tdest VARCHAR(64) NOT NULL, \n'
        '\tat VARCHAR(32) NOT NULL, \n'
        '\tdetail TEXT NOT NULL, \n'
        '\tprev_hash VARCHAR(64) NOT NULL, \n'
        '\thash VARCHAR(64) NOT NULL, \n'
        '\tdata TEXT, \n'
        '\tPRIMARY KEY (id), \n'
        '\tFOREIGN KEY(command_id) REFERENCES commands (id) ON DELETE CASCADE\n'
        ')'
    ),
    'CREATE UNIQUE INDEX ix_transitions_command_seq ON transitions (command_id, seq)',
    (
        'CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT '
        'alembic_version_pkc PRIMARY KEY (version_num))'
    ),
)
