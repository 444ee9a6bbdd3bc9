-- 0004_models (down)
DROP TABLE models;
