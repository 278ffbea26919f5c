"""REDCap's message texts, exactly as redcap-api.md gives them (clients tell errors apart by text)."""

from __future__ import annotations

BAD_TOKEN = "You do not have permissions to use the API"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_ACCESS = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)
INVALID_EVENT = "invalid event"
NOT_FILE_FIELD = "The field '{field}' does not exist or is not a 'file' field"
NO_FILE_DOWNLOAD = "There is no file to download for this record"
NO_FILE_DELETE = "There is no file to delete for this record"
RECORD_MISSING = 'The record "{record}" does not exist'
RECORD_MISSING_LEGACY = "The record '{record}' does not exist"
RECORD_MISSING_UPLOAD = "The record '{record}' does not exist. It must exist to upload a file"
NO_VALID_FILE = "No valid file was uploaded"
CLEANUP = "The file cannot be uploaded because the project is in Analysis/Cleanup status."
CLEANUP_RECORDS = "The data cannot be imported because the project is in Analysis/Cleanup status."
LOCKED_UPLOAD = 'The uploaded file could not be saved because record "{record}" is locked.'
LOCKED_DELETE = 'The file could not be deleted because record "{record}" is locked.'
LOCKED_RECORD = 'The record "{record}" is locked and cannot be modified.'
TOO_LARGE = "The uploaded file exceeded the maximum file size limit of {mb} MB for File Upload fields."
SIGNATURE = (
    "The field '{field}' is a signature field, which cannot be imported using the API but can only be "
    "created using the web interface. However, it can be downloaded or deleted using the API."
)
BAD_CONTENT = 'The value of the parameter "content" is not valid'
BAD_ACTION = 'The value of the parameter "action" is not valid'
CLASSIC = {
    "arm": "You cannot export arms for classic projects",
    "event": "You cannot export events for classic projects",
    "formEventMapping": "You cannot export form/event mappings for classic projects",
}
NO_DATA = 'The parameter "data" is missing'
BAD_DATA = "The data being imported is not formatted correctly"
IMPORT_FORMATS = "The sandbox imports records in json or csv format only"
DELETE_MISSING = (
    "One or more of the records provided cannot be deleted because they do not "
    "exist in the project. The following records do not exist: "
)
