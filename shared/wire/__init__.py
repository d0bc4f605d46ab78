"""The queue contract that producers and workers share: protocol, posts, envelope, producer, transport.

Nothing here knows a model or imports the worker; the transport reports what it does through an event hook."""
