"""topicq's common package: settings, preprocessing, embedders, database, model store."""
