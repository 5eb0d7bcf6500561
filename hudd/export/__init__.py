"""What engineers inspect (HUDD Step 2): cluster image folders, GIFs, contact sheets, plots, XLSX."""
