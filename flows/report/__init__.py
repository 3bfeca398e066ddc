"""`ferry report`: an environment's run history as one static HTML page that opens offline.

`render.render` asks the history tables (flows.history.query) with DuckDB for aggregates only,
draws them with Plotly and inlines plotly.js once, so the page needs no CDN and no server: a
file on a laptop or an object in S3 shows the same thing.
"""
