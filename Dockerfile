FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY worker worker
COPY migrations migrations
COPY templates templates
COPY static static
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir -e .
EXPOSE 8000
CMD ["anomaloop", "serve", "--host", "0.0.0.0", "--no-demo"]
