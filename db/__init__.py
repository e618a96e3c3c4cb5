"""Persistence shared by the API and the workers: settings, models, engine, queries."""
