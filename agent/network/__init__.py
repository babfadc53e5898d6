"""The guest's network as nova describes it: a typed model (``model``), the stack an image runs (``detect``), one
pure renderer per stack (``renderers``), the host name and resolver files (``names``), and the set of files a
reset writes (``plan``)."""
