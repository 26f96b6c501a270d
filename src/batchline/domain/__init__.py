"""Pure data: jobs and their states, annotations. Imports nothing else of batchline."""
