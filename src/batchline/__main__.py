from batchline.cli import app

app()
