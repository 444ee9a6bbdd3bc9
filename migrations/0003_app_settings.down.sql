-- 0003_app_settings (down)
DROP TABLE app_settings;
