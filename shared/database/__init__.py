"""The SQL database: connection and outage classification, tables, result rows, migrations."""
