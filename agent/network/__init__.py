"""The guest's network as nova describes it: a typed model (``model``) and one renderer per network stack."""
