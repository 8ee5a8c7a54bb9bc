"""The browser client (lingting.js), shipped inside the server so it can serve it."""
