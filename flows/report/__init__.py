"""`ferry report`: an environment's run history as one static HTML page that opens offline.

`render.report` asks the history tables (flows.history.query) with DuckDB for aggregates only
and writes them into the page as JSON; the page's own script (figures.js) draws them with
plotly.js, which `site.publish` puts beside the page once per version. The page needs no CDN
and no server: a folder on a laptop, or a download of the store's report folder, shows the same.
"""
