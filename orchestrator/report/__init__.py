"""What a results store says: the study's tables and figures, any experiment's table, the
findings check, the demo's closing report and the HTML page."""
