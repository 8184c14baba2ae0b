-- tandem's own thread store (checkpointer = "postgresql://…/tandem_threads"), kept apart
-- from the database LangGraph Server uses for the threads it serves.
CREATE DATABASE tandem_threads;
