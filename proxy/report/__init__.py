"""`synqra report`: a month's economics as a self-contained HTML page or Markdown."""
