"""NoteSpace's logic: every module of the app and the CLI below the pages (docs/architecture.md)."""
