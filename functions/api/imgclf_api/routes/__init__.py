"""The API's routes, one Powertools Router per group; app.py includes them in this order."""
