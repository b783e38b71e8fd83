"""The pipeline: stages that turn one spooled message into a ticket change and one import-log outcome."""
