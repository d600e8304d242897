"""Real-browser tests: JupyterLab + Chromium + Playwright (marker ``browser``)."""
