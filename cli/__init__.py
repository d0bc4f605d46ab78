"""The `topicq` command: the composition root above trainer/ and worker/ (cli/main.py is the group)."""
